"""Pure estimators, inference and the analysis worker logic. No Kafka or Redis imports here."""
