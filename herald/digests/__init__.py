"""Digests: a route's notifications collected per recipient and sent on a fixed calendar.

`schedule` computes when a digest is due (pure, zoneinfo), `store` keeps schedules in the
ledger, `collect` is the minute tick that claims due schedules and writes digest jobs,
`email` renders a digest and `deliver` sends it once.
"""
