"""Results (section 6): scores, SavedModel export, figures and retrieval of a trained model."""
