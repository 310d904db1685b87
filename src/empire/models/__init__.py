"""Models: demand forecasting and anomaly detection (scikit-learn contract)."""
