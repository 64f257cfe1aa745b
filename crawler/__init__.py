"""armswatch: a monitoring crawler that flags arms-transfer stories in multilingual news."""

__version__ = "0.1.0"
