"""One customer record: a signed-in resident's back-office references, pre-fill and "my requests"."""
