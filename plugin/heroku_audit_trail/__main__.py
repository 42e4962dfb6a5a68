from heroku_audit_trail.cli import run

run()
