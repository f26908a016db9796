from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


def _neuron_changed(**kwargs: object) -> None:
    from federation.selectors import neuron_cache_clear

    neuron_cache_clear()


class FederationConfig(AppConfig):
    name = "federation"
    verbose_name = "Federation (neurons)"

    def ready(self) -> None:
        from federation.models import Neuron

        # Deactivation, a new key, a deletion: this process stops serving the cached copy at once.
        post_save.connect(_neuron_changed, sender=Neuron, dispatch_uid="federation.neuron_cache")
        post_delete.connect(_neuron_changed, sender=Neuron, dispatch_uid="federation.neuron_cache_delete")
