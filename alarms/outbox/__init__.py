"""The durable outbox: every fired notification is kept here until it is delivered."""
