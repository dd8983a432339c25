"""Every write and rule of the predictions app: keys, predicting, triage, suggestions."""
