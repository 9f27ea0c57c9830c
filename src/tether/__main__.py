from tether.cli import app

app()
