"""Ship the Heroku Enterprise audit trail to a log shipper as ECS JSON lines."""

__version__ = "0.1.0"
