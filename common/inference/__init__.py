"""The inference room: images in, hands and finger counts out (the model, the pipelines, the worker
processes and the pool that feeds them). It never imports the messaging room."""
