"""The staff console: server-rendered GOV.UK Frontend pages on the admin services (issue 15).

`static/govuk/` is GOV.UK Frontend from npm (`make govuk-frontend`), with its LICENSE.txt and PROVENANCE.
"""
