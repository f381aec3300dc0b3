"""Pictures of what the model does: plots that return matplotlib figures."""
