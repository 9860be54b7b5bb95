"""Tenancy and money: organization, projects, API keys (and later usage, quotas, storage).

A leaf layer: nothing here imports the rest of hearth. Importing ``hearth.platform.keys`` does not
import SQLAlchemy, so the HTTP edge may use ``Principal`` as a type cheaply.
"""
