"""The input (section 4.1): the converter's manifest, crops, flips, mean, PCA noise, ten patches."""
