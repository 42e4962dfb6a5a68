import sys

from heroku_audit_trail.cli import main

sys.exit(main())
