#!/usr/bin/env python
"""The example project's manage.py (the demo uses example_project.settings.dev)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings.dev")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
