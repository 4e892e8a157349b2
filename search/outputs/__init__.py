"""What a run leaves: the export (configs, weights, test accuracy), figures, reports and console tables."""
