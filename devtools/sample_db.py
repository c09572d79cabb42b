"""A small but realistic sample database: the objects pg_dump has to get right.

Partitions, triggers, functions, views, enum and domain types, a large object, sequences,
non-ASCII identifiers and an unlogged table. Used by the tests (round trips), the demo and benchmarks.
"""

from __future__ import annotations

from typing import Any

import psycopg

SCHEMA_SQL = """
CREATE SCHEMA shop;
CREATE SCHEMA "Ünïcode schéma";
CREATE TYPE shop.order_status AS ENUM ('new', 'paid', 'shipped', 'cancelled');
CREATE DOMAIN shop.email AS text CHECK (VALUE ~ '^[^@]+@[^@]+$');
CREATE SEQUENCE shop.invoice_no START 1000 INCREMENT 7;

CREATE TABLE shop.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    email shop.email UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz
);
CREATE TABLE shop.orders (
    id bigserial,
    customer_id bigint NOT NULL REFERENCES shop.customers(id),
    status shop.order_status NOT NULL DEFAULT 'new',
    amount numeric(12, 2) NOT NULL,
    ordered_on date NOT NULL,
    invoice bigint DEFAULT nextval('shop.invoice_no'),
    PRIMARY KEY (id, ordered_on)
) PARTITION BY RANGE (ordered_on);
CREATE TABLE shop.orders_2025 PARTITION OF shop.orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE shop.orders_2026 PARTITION OF shop.orders FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE shop.audit_log (id bigserial PRIMARY KEY, tbl text, op text, at timestamptz DEFAULT now());
CREATE UNLOGGED TABLE shop.session_cache (key text PRIMARY KEY, value jsonb);
CREATE TABLE "Ünïcode schéma"."Tâble ☃ ""q"" x" ("Colonne é" text, n int);
CREATE TABLE public.documents (id int PRIMARY KEY, title text, body_oid oid);

CREATE FUNCTION shop.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    INSERT INTO shop.audit_log (tbl, op) VALUES (TG_TABLE_NAME, TG_OP);
    RETURN NEW;
END $$;
CREATE TRIGGER customers_touch BEFORE UPDATE ON shop.customers
    FOR EACH ROW EXECUTE FUNCTION shop.touch_updated_at();
CREATE FUNCTION shop.customer_total(cid bigint) RETURNS numeric LANGUAGE sql STABLE AS
    $$ SELECT coalesce(sum(amount), 0) FROM shop.orders WHERE customer_id = cid $$;
CREATE VIEW shop.customer_totals AS
    SELECT c.id, c.name, shop.customer_total(c.id) AS total FROM shop.customers c;
CREATE MATERIALIZED VIEW shop.status_counts AS
    SELECT status, count(*) AS n FROM shop.orders GROUP BY status;
COMMENT ON TABLE shop.orders IS 'Orders, partitioned by year — with a non-ASCII comment';
"""

DATA_SQL = """
INSERT INTO shop.customers (name, email)
    SELECT 'Customer ' || g || CASE WHEN g % 7 = 0 THEN ' Jürgen' ELSE '' END, 'c' || g || '@example.com'
    FROM generate_series(1, {customers}) g;
INSERT INTO shop.orders (customer_id, status, amount, ordered_on)
    SELECT 1 + (g % {customers}),
           (ARRAY['new','paid','shipped','cancelled']::shop.order_status[])[1 + g % 4],
           round((g % 997) * 1.37, 2),
           DATE '2025-01-01' + (g % 700)
    FROM generate_series(1, {orders}) g;
UPDATE shop.customers SET name = name || ' (vip)' WHERE id % 50 = 0;
INSERT INTO shop.session_cache SELECT 'k' || g, jsonb_build_object('n', g) FROM generate_series(1, 20) g;
INSERT INTO "Ünïcode schéma"."Tâble ☃ ""q"" x" VALUES ('naïve café', 1), ('日本語', 2), (NULL, 3);
INSERT INTO public.documents
    VALUES (1, 'manual', lo_from_bytea(0, convert_to('large object body ✓', 'UTF8')));
SELECT setval('shop.invoice_no', 5000);
REFRESH MATERIALIZED VIEW shop.status_counts;
"""


def seed(connect_kwargs: dict[str, Any], *, customers: int = 200, orders: int = 2000) -> None:
    """Create the sample schema and data in the database ``connect_kwargs`` points at."""
    with psycopg.connect(**connect_kwargs, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
        conn.execute(DATA_SQL.format(customers=int(customers), orders=int(orders)))


# Queries whose results must be identical between a source and its restored copy.
COMPARISON_QUERIES = {
    "tables": """
        SELECT n.nspname, c.relname, c.relkind, c.relpersistence
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
        ORDER BY 1, 2""",
    "columns": """
        SELECT table_schema, table_name, column_name, data_type, column_default, is_nullable
        FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
        ORDER BY 1, 2, column_name""",
    "functions": """
        SELECT n.nspname, p.proname, pg_get_functiondef(p.oid) FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2""",
    "triggers": "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1",
    "views": """
        SELECT schemaname, viewname, definition FROM pg_views
        WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2""",
    "types": """
        SELECT t.typname, t.typtype, pg_catalog.format_type(t.typbasetype, NULL),
               array(SELECT enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY enumsortorder)
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = 'shop' AND t.typtype IN ('e', 'd') ORDER BY 1""",
    "sequences": "SELECT schemaname, sequencename, last_value, increment_by FROM pg_sequences ORDER BY 1, 2",
    "comments": "SELECT obj_description('shop.orders'::regclass, 'pg_class')",
    "large_objects": "SELECT convert_from(lo_get(body_oid), 'UTF8') FROM public.documents ORDER BY id",
    "customers": "SELECT id, name, email, updated_at IS NOT NULL FROM shop.customers ORDER BY id",
    "orders": "SELECT id, customer_id, status::text, amount, ordered_on, invoice FROM shop.orders ORDER BY 1",
    "orders_partitions": "SELECT tableoid::regclass::text, count(*) FROM shop.orders GROUP BY 1 ORDER BY 1",
    "audit_log": "SELECT id, tbl, op FROM shop.audit_log ORDER BY id",
    "unicode": 'SELECT * FROM "Ünïcode schéma"."Tâble ☃ ""q"" x" ORDER BY n',
    "matview": "SELECT status::text, n FROM shop.status_counts ORDER BY 1",
}


def snapshot(connect_kwargs: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Run every comparison query; two databases with equal snapshots hold the same schema and data."""
    with psycopg.connect(**connect_kwargs, autocommit=True) as conn:
        return {name: conn.execute(query).fetchall() for name, query in COMPARISON_QUERIES.items()}
