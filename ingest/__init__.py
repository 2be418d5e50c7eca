"""The SMTP edge: recipient policy, verification callouts, before-queue relay, mail events.

Built on aiosmtpd (server), aiosmtplib (callouts, relay) and dnspython (MX); see issue 3.
"""
