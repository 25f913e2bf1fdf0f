"""Calls from this app into its tenants' Jira sites (``outbound.jira``)."""
