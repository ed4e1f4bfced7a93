"""The SageMaker Pipeline of the BERT multi-label workflow (`pipeline.get_pipeline`)."""
