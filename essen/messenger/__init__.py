"""Messenger Platform: webhook intake, conversation rules, the Send API and a fake Graph API."""
