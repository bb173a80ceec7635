"""Who may do what: authentication now; roles, tenants, quotas and audit as they land."""
