"""Fleet mode: one guard for a primary account and its subaccounts."""
