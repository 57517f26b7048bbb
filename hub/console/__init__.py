"""The staff console at /console: server-rendered GOV.UK Frontend pages on the admin services (issue 15,
docs/console.md). `pages.install` mounts it; `session` signs staff in; `figures` and `search` hold its SQL.

`static/govuk/` is GOV.UK Frontend from npm (`make govuk-frontend`), with its LICENSE.txt and PROVENANCE.
"""
