"""Every stored row that belongs to a council carries its tenant: each table has a non-null
`tenant` column, apart from the few listed here with the reason they need none."""

from __future__ import annotations

from hub.store.tables import metadata

# tables that hold no tenant's data, and why
NO_TENANT = {
    "connector_circuits": "one row per connector: its circuit breaker and pause, shared by every tenant it serves",
    "outbox": "a delivery id and connector waiting to be published, deleted once sent; the tenant is on the delivery",
    "submission_attachments": "a link between a submission and an upload; the tenant is on both, and intake links only a client's own uploads",
}
# tables whose tenant may be empty, and when
TENANT_MAY_BE_EMPTY = {
    "audit_log": "hub-wide actions belong to no tenant: a configuration change, pausing a shared connector",
}


def test_every_table_with_tenant_data_has_a_non_null_tenant_column() -> None:
    missing, nullable = [], []
    for name, table in metadata.tables.items():
        if name in NO_TENANT:
            continue
        if "tenant" not in table.c:
            missing.append(name)
        elif table.c.tenant.nullable and name not in TENANT_MAY_BE_EMPTY:
            nullable.append(name)
    assert missing == [], f"tables without a tenant column: {missing}"
    assert nullable == [], f"tables whose tenant may be NULL: {nullable}"


def test_the_exceptions_name_tables_that_exist_and_still_need_the_exception() -> None:
    for name in NO_TENANT:
        assert name in metadata.tables and "tenant" not in metadata.tables[name].c, name
    for name in TENANT_MAY_BE_EMPTY:
        assert metadata.tables[name].c.tenant.nullable, name
