"""Storage: SQLAlchemy 2 (async) tables, the engine, and queries. The only package that imports sqlalchemy."""
