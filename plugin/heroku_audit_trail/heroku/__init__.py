"""Heroku's side: the transport (how a request is sent), the API (what is asked), the JSON
bodies and the monthly archives."""
