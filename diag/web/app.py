"""The Flask app factory: one app per service, blueprints for each part of the API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

from diag.web import errors, origin

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from diag.service import Service


def create_app(service: Service, scheduler: BaseScheduler | None = None) -> Flask:
    """The app over the service's parts; `scheduler` is its running scheduler, if any (/healthz)."""
    from diag.web.diagnosis_routes import bp as diagnosis_bp
    from diag.web.events_routes import bp as events_bp
    from diag.web.ingest_routes import bp as ingest_bp
    from diag.web.instances_routes import bp as instances_bp
    from diag.web.metrics_routes import bp as metrics_bp
    from diag.web.query_routes import bp as query_bp
    from diag.web import instrumentation
    from diag.web.service_routes import BatchExposition, bp as service_bp, init_registry

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    app.json.sort_keys = False
    parts = service.parts
    registry = init_registry(parts)
    app.extensions["diag"] = {"parts": parts, "scheduler": scheduler, "registry": registry,
                              "batch_exposition": BatchExposition(parts.collection, parts.instance_id)}
    errors.install(app)
    from diag.web.openapi import bp as openapi_bp

    app.register_blueprint(openapi_bp)
    origin.install(app)
    histogram = instrumentation.install(app, registry)
    from diag.web.metrics_fastpath import MetricsFastPath

    app.wsgi_app = app.extensions["diag"]["metrics"] = MetricsFastPath(app, app.wsgi_app, histogram)
    app.register_blueprint(service_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(query_bp)
    app.register_blueprint(ingest_bp)
    app.register_blueprint(instances_bp)
    app.register_blueprint(diagnosis_bp)
    app.register_blueprint(events_bp)
    from diag.web import auth
    from diag.web.fleet_routes import bp as fleet_bp  # fleet: activations, agent registration

    auth.install(app)
    app.register_blueprint(fleet_bp)
    from diag.web.alerting_routes import bp as alerting_bp  # alerting hook

    app.register_blueprint(alerting_bp)
    from diag.web.prometheus_routes import bp as prometheus_bp  # Prometheus-compatible reads, /prometheus

    app.register_blueprint(prometheus_bp)
    from diag.web.commands_routes import bp as commands_bp  # remote commands: 404 unless enabled

    app.register_blueprint(commands_bp)
    from diag.web.connectivity_routes import bp as connectivity_bp  # connectivity diagnosis

    app.register_blueprint(connectivity_bp)
    from dashboards.pages import bp as dashboard_bp  # the dashboard, at /
    app.register_blueprint(dashboard_bp)
    return app
