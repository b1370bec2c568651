"""The messaging room: MQTT topics, the client, the outbox and the bus edge and hub publish on. It never
imports the inference room."""
