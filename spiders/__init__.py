"""Scrapy spiders: they fetch sources and article pages and hand PageItems to the pipelines."""
