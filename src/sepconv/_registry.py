"""One resolver for every "name, callable, instance or Keras config dict -> object" registry.

Initializers, activations, regularizers and constraints each declare a ``Registry`` and
use :meth:`Registry.get` and :func:`serialize`; nothing else parses identifiers.  Keras 3
and tf-keras objects (``keras.initializers.HeNormal(seed=1)``, ``keras.activations.relu``)
are turned into sepconv's equal through their config or name, since they compute on
their own backends' tensors.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable, Dict, Iterator, Mapping, Optional

#: The user's objects for the names a Keras file uses that sepconv does not know
#: (``load_keras_model(path, custom_objects=...)``): set by :func:`custom_object_scope`.
_CUSTOM: contextvars.ContextVar[Dict[str, Any]] = contextvars.ContextVar(
    "sepconv_custom_objects", default={})


@contextlib.contextmanager
def custom_object_scope(objects: Optional[Mapping[str, Any]]) -> Iterator[None]:
    """Within the block, names in ``objects`` resolve to their values (Keras'
    ``custom_objects``): layer classes for the model loader, functions and classes for
    the activation, initializer, regularizer and constraint registries."""
    if objects is not None and not isinstance(objects, Mapping):
        raise TypeError(f"Invalid type for argument `custom_objects`. Expected a dict of "
                        f"name -> object. Received {type(objects).__name__}")
    token = _CUSTOM.set(dict(objects or {}))
    try:
        yield
    finally:
        _CUSTOM.reset(token)


def custom_object(*names: Any) -> Optional[Any]:
    """The object of the current :func:`custom_object_scope` under the first of ``names``
    it holds, also as the part after ``>`` (Keras 3 registers ``"Custom>Name"``)."""
    objects = _CUSTOM.get()
    if not objects:
        return None
    for name in names:
        if isinstance(name, str):
            for key in (name, name.split(">")[-1]):
                if key in objects:
                    return objects[key]
    return None


class Registry:
    """Maps Keras names (case-insensitive, with aliases) to classes or functions.

    ``factories`` maps a lower-case name to a zero-argument-callable producing the object
    for a bare string (e.g. ``"l1_l2"`` -> ``L1L2(0.01, 0.01)``); ``classes`` maps Keras
    class names (``"GlorotUniform"``) to classes built from a config dict.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self.factories: Dict[str, Callable[[], Any]] = {}
        self.classes: Dict[str, type] = {}

    def add(self, obj: Any, *names: str) -> Any:
        """Register a class (built with no arguments for a bare name) or a function."""
        if isinstance(obj, type):
            self.classes[obj.__name__.lower()] = obj
            factory = obj
        else:
            def factory(obj=obj):
                return obj
        for name in names:
            self.factories[name.lower()] = factory
        return obj

    def known(self):
        return sorted(self.factories)

    def get(self, identifier: Any, argument: str, build: Optional[dict] = None) -> Optional[Any]:
        """Resolve ``identifier`` for the layer argument named ``argument``.  ``build``:
        constructor arguments a config does not hold (an optimizer's parameters), given
        to a class built here and to a callable identifier (a factory)."""
        build = build or {}
        if identifier is None:
            return None
        is_dict = isinstance(identifier, dict)
        custom = custom_object(identifier.get("registered_name"),
                               identifier.get("class_name")) if is_dict else \
            custom_object(identifier)  # (a name; custom_object skips other values)
        if isinstance(custom, type):  # a class: built from the dict's config
            config = identifier.get("config") if is_dict else None
            return custom(**build, **(config or {}))
        if custom is not None:
            return custom
        if isinstance(identifier, str):
            factory = self.factories.get(identifier.lower())
            if factory is None:
                raise ValueError(
                    f"Invalid value for argument `{argument}`. Expected {_a(self.kind)} name "
                    f"({', '.join(self.known())}), a callable or a config dict. "
                    f"Received {argument}={identifier!r}")
            return factory(**build)
        if isinstance(identifier, dict):
            return self._from_config(identifier, argument, build)
        if _is_keras_object(identifier):
            return self._from_keras(identifier, argument, build)
        if isinstance(identifier, type):
            return identifier(**build)
        if callable(identifier):
            return identifier(**build) if build else identifier
        raise TypeError(f"Invalid type for argument `{argument}`. Expected {_a(self.kind)} name, "
                        f"a callable or a config dict. Received {argument}={identifier!r} "
                        f"of type {type(identifier).__name__}")

    def _from_keras(self, obj: Any, argument: str, build: Optional[dict] = None) -> Any:
        """A Keras 3 / tf-keras object (it computes on its own tensors): sepconv's equal,
        from its class name and config, or for a function, from its name."""
        if isinstance(obj, type):
            return self._from_config({"class_name": obj.__name__}, argument, build)
        if hasattr(obj, "get_config"):
            return self._from_config({"class_name": type(obj).__name__,
                                      "config": obj.get_config()}, argument, build)
        return self.get(getattr(obj, "__name__", repr(obj)), argument, build)

    def _from_config(self, config: dict, argument: str, build: Optional[dict] = None) -> Any:
        if "class_name" not in config:
            raise ValueError(f"Invalid value for argument `{argument}`. A config dict needs a "
                             f"'class_name' key. Received {argument}={config!r}")
        name = str(config["class_name"])
        build = build or {}
        inner = dict(config.get("config") or {})
        cls = self.classes.get(name.lower())
        if cls is None:
            factory = self.factories.get(name.lower())
            if factory is None:
                raise ValueError(f"Invalid value for argument `{argument}`: unknown {self.kind} "
                                 f"class_name {name!r}. Known: {', '.join(self.known())}")
            if not inner:
                return factory(**build)
            cls = type(factory(**build))
        inner.pop("name", None)
        try:
            return cls(**build, **inner)
        except TypeError as err:
            raise ValueError(f"Invalid value for argument `{argument}`: {err}. "
                             f"Received {argument}={config!r}") from None


class KerasObject:
    """Base of initializers, regularizers and constraints: Keras' ``get_config`` and a
    repr that shows it."""

    def get_config(self) -> dict:
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _is_keras_object(obj: Any) -> bool:
    """True for objects (or classes) defined by Keras 3, tf-keras or TensorFlow."""
    module = getattr(obj if isinstance(obj, type) or callable(obj) and not hasattr(
        obj, "get_config") else type(obj), "__module__", None) or ""
    return module.split(".")[0] in ("keras", "tf_keras", "tensorflow")


def serialize(obj: Any) -> Any:
    """Keras' serialized form: ``None``, a name for functions, else a class/config dict."""
    if obj is None:
        return None
    if hasattr(obj, "get_config"):
        return {"class_name": type(obj).__name__, "config": obj.get_config()}
    return getattr(obj, "__name__", repr(obj))
