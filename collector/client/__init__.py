"""Client code: what talks to a running collector over its HTTP API (`collector tail`,
`collector alarms`), apart from the server's stages."""
