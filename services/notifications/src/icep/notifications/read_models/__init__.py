"""Read models fed by other services' events: the fan-out of each consumed event, and the feed."""
