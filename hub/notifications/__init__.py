"""Messages to residents through GOV.UK Notify: which ones (config) and sending them (sender)."""
