"""Automation rules: actions run when events match or a cron schedule comes due."""
