"""Fleet mode (issue 13): one guard for a primary account and its subaccounts."""
