"""Fleet mode: one guard for a primary Vonage account and its subaccounts, funded by transfers."""
