"""Publishing: export and push to the Hub, and the generated model card."""
