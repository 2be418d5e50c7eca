"""The Faust topology: the only writer of address state (lifecycle rules, windows, expiry)."""
