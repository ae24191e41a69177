/*
 * fsd/store_schema.h: the SQL schema embedded from schema/ at build time
 * (schema/embed.py generates the definitions).
 */
#ifndef SNAPFS_STORE_SCHEMA_H
#define SNAPFS_STORE_SCHEMA_H

/* Turns a store of schema version from into version from + 1. */
struct store_migration {
	int from;
	const char *sql;
};

/* The version store_schema_sql creates (PRAGMA user_version). */
extern const int store_schema_version_current;

/* The whole schema of a new store. */
extern const char store_schema_sql[];

/* Ordered by from; ends with an entry whose sql is NULL. */
extern const struct store_migration store_migrations[];

#endif
