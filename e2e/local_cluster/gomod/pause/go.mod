// The pod sandbox ("pause") program, built here because no image can be pulled.
module local/runai-mlflow/pause

go 1.24.0
