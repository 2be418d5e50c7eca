"""Admin commands on ``discovery.commands`` and their results on ``discovery.command-results``.

A command's ``event_id`` is its command id: the admin API answers 202 with it, and the result the
streams topology publishes carries it back, applied or rejected with a reason.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from smtp_discovery.schemas.address import parse_address
from smtp_discovery.schemas.base import AddressMessage, MailAddress
from smtp_discovery.schemas.state import UserRole


class CommandBase(AddressMessage):
    actor: str = Field(min_length=1, max_length=200, description="Who asked: admin or token id.")


class CreateUser(CommandBase):
    """Create User Account: the address becomes a user with the given name and role."""

    type: Literal["create_user"] = "create_user"
    first_name: str = Field(default="", max_length=100)
    surname: str = Field(default="", max_length=100)
    role: UserRole | None = Field(default=None, description="None: the Default New User Role.")


class CreateFunctional(CommandBase):
    """Create Functional Account: a shared or role mailbox (info@, sales@), not a person."""

    type: Literal["create_functional"] = "create_functional"
    display_name: str = Field(default="", max_length=200)


class MarkInvalid(CommandBase):
    type: Literal["mark_invalid"] = "mark_invalid"


class RemoveInvalid(CommandBase):
    """Remove from Invalid List: the address is forgotten and will be verified again."""

    type: Literal["remove_invalid"] = "remove_invalid"


class AddAlias(CommandBase):
    """Add as Alias: the address becomes an alias of ``primary``, a user of the same tenant."""

    type: Literal["add_alias"] = "add_alias"
    primary: MailAddress

    @model_validator(mode="after")
    def _not_itself(self) -> AddAlias:
        if parse_address(self.primary).normalized == parse_address(self.address).normalized:
            raise ValueError("an address cannot be an alias of itself")
        return self


class DeleteAddress(CommandBase):
    type: Literal["delete"] = "delete"


class EraseAddress(CommandBase):
    """Erase everything kept about the address (a data subject's erasure request): its record
    goes, whatever its status, without a state change that would carry the address into the
    history again. Aliases pointing to it are erased by commands of their own."""

    type: Literal["erase"] = "erase"


class ImportUser(CommandBase):
    """One row of a user import (CSV or directory): becomes a user, reason ``import``."""

    type: Literal["import_user"] = "import_user"
    first_name: str = Field(default="", max_length=100)
    surname: str = Field(default="", max_length=100)
    role: UserRole | None = None
    batch_id: str = Field(default="", max_length=128)


AdminCommand = Annotated[
    CreateUser
    | CreateFunctional
    | MarkInvalid
    | RemoveInvalid
    | AddAlias
    | DeleteAddress
    | EraseAddress
    | ImportUser,
    Field(discriminator="type"),
]


class Tick(AddressMessage):
    """Evaluate the address's time-driven transitions (expiry, pruning) as of ``event_time``.

    Sent by the streams worker's own timer: tables can only change while processing a message,
    so the timer turns "this address is due" into a message on the address's partition.
    """

    type: Literal["tick"] = "tick"


class AliasRequest(AddressMessage):
    """Alias link, step 1, keyed by the *primary* (``address``): is it a user? Reserve the alias.

    An admin may link addresses with different route keys (jdoe@ to john.doe@), which live on
    different partitions; the primary's partition checks and records the link, then grants it.
    """

    type: Literal["alias_request"] = "alias_request"
    alias: MailAddress
    command_id: str = Field(min_length=1, max_length=128)
    actor: str = Field(min_length=1, max_length=200)


class AliasGrant(AddressMessage):
    """Alias link, step 2, keyed by the alias (``address``): the primary is a user; link to it."""

    type: Literal["alias_grant"] = "alias_grant"
    primary: MailAddress
    command_id: str = Field(min_length=1, max_length=128)
    actor: str = Field(min_length=1, max_length=200)


class AliasRelease(AddressMessage):
    """Keyed by a primary (``address``): ``alias`` is no longer its alias."""

    type: Literal["alias_release"] = "alias_release"
    alias: MailAddress


SystemCommand = Tick | AliasRequest | AliasGrant | AliasRelease

CommandsTopicValue = Annotated[
    CreateUser
    | CreateFunctional
    | MarkInvalid
    | RemoveInvalid
    | AddAlias
    | DeleteAddress
    | EraseAddress
    | ImportUser
    | Tick
    | AliasRequest
    | AliasGrant
    | AliasRelease,
    Field(discriminator="type"),
]
"""Everything on ``discovery.commands``: admin commands and the worker's own system commands."""


class CommandResult(AddressMessage):
    """What became of one command. A rejection always says why, in a code and a sentence."""

    type: Literal["command_result"] = "command_result"
    command_id: str = Field(min_length=1, max_length=128)
    command_type: str = Field(min_length=1, max_length=64)
    outcome: Literal["applied", "rejected"]
    reason_code: str | None = Field(default=None, max_length=64)
    message: str = Field(default="", max_length=1000)

    @model_validator(mode="after")
    def _rejections_explain(self) -> CommandResult:
        if self.outcome == "rejected" and not (self.reason_code and self.message):
            raise ValueError("a rejected command needs a reason_code and a message")
        return self
