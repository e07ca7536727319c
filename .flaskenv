FLASK_APP=app.cli_app:create_cli_app
