"""The Flask app factory: one app per service, blueprints for each part of the API."""

from __future__ import annotations

from flask import Flask

from diag.web import errors


def create_app(service, scheduler=None) -> Flask:
    """`service` is a diag.service.Service; `scheduler` its running scheduler, if any."""
    from diag.web.diagnosis_routes import bp as diagnosis_bp
    from diag.web.events_routes import bp as events_bp
    from diag.web.ingest_routes import bp as ingest_bp
    from diag.web.instances_routes import bp as instances_bp
    from diag.web.metrics_routes import bp as metrics_bp
    from diag.web.query_routes import bp as query_bp
    from diag.web.service_routes import bp as service_bp, init_registry

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    app.json.sort_keys = False
    app.extensions["diag"] = {"service": service, "scheduler": scheduler, "registry": init_registry(service)}
    errors.install(app)
    app.register_blueprint(service_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(query_bp)
    app.register_blueprint(ingest_bp)
    app.register_blueprint(instances_bp)
    app.register_blueprint(diagnosis_bp)
    app.register_blueprint(events_bp)
    return app
