"""The HTTP side: the Flask app factory, its blueprints and the JSON error shape."""
