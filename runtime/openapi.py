"""The OpenAPI 3.1 description of the serving API, served at GET /openapi.json.

Built from the running server's limits, so ``maxItems``/``maxLength`` in the schema are the limits
the server enforces (the fuzz tests check that every request the schema rejects gets a 4xx).
"""

from __future__ import annotations

from typing import Any


def _post_errors(max_body_bytes: int, bad_request: str) -> dict:
    """The error responses every POST endpoint shares (400 says what a bad request is there)."""
    return {
        "400": _error(bad_request),
        "413": _error(f"the body is larger than {max_body_bytes} bytes"),
        "415": _error("Content-Type is not application/json"),
        "422": _error("valid JSON that breaks the request schema or limits"),
        "500": _error("the model failed on the batch that held this request"),
        "503": _error("not ready yet, shutting down, or the queue is full (see Retry-After)"),
        "504": _error("not answered within the server's per-request timeout"),
    }


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_spec(
    *,
    max_texts: int,
    max_chars: int,
    max_body_bytes: int,
    task: str | None = None,
    labels: list[str] | None = None,
    version: str = "0.1.0",
) -> dict[str, Any]:
    """Return the OpenAPI document (a JSON-ready dict) for a server with these limits."""
    result_schemas = {
        "Classification": {
            "type": "object",
            "required": ["label", "score", "scores"],
            "properties": {
                "label": {"type": "string", **({"enum": list(labels)} if labels else {})},
                "score": {"type": "number", "description": "probability of the predicted label"},
                "scores": {
                    "type": "object",
                    "additionalProperties": {"type": "number"},
                    "description": "probability of every label",
                },
            },
        },
        "Embedding": {
            "type": "object",
            "required": ["embedding"],
            "properties": {"embedding": {"type": "array", "items": {"type": "number"}}},
        },
    }
    if task == "text-classification":
        result = {"$ref": "#/components/schemas/Classification"}
    elif task == "feature-extraction":
        result = {"$ref": "#/components/schemas/Embedding"}
    else:
        result = {
            "oneOf": [
                {"$ref": "#/components/schemas/Classification"},
                {"$ref": "#/components/schemas/Embedding"},
            ]
        }
    plain = {"content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edgepack serve",
            "version": version,
            "description": "Text classification or embeddings from an edgepack artifact, with "
            'dynamic batching. Errors are JSON: {"error": {"code", "message"}}.',
        },
        "paths": {
            "/v1/predict": {
                "post": {
                    "summary": "Classify or embed texts",
                    "operationId": "predict",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "one result per text, in input order",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/PredictResponse"}
                                }
                            },
                        },
                        **_post_errors(max_body_bytes, "the body is not valid UTF-8 JSON"),
                    },
                }
            },
            "/v1/embeddings": _openai_path(
                "OpenAI-compatible embeddings (embedding models)", "embeddings", "EmbeddingsRequest", max_body_bytes
            ),
            "/v1/classify": _openai_path(
                "Classify texts, OpenAI-style list answer (classifiers)", "classify", "ClassifyRequest", max_body_bytes
            ),
            "/healthz": {
                "get": {
                    "summary": "The process is alive",
                    "operationId": "healthz",
                    "responses": {"200": {"description": "alive", **plain}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "The model is loaded and warmed up",
                    "operationId": "readyz",
                    "responses": {
                        "200": {"description": "ready", **plain},
                        "503": _error("still loading, failed to load, or stopping"),
                    },
                }
            },
            "/v1/model": {
                "get": {
                    "summary": "What is being served (manifest summary and limits)",
                    "operationId": "model",
                    "responses": {
                        "200": {"description": "model summary", **plain},
                        "503": _error("model not loaded yet"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format 0.0.4)",
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {"200": {"description": "OpenAPI 3.1", **plain}},
                }
            },
        },
        "components": {
            "schemas": {
                "PredictRequest": {
                    "type": "object",
                    "required": ["texts"],
                    "additionalProperties": False,
                    "properties": {
                        "texts": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": max_texts,
                            "items": {"type": "string", "minLength": 1, "maxLength": max_chars},
                        }
                    },
                    "example": {"texts": ["a gripping, beautifully acted film", "dull"]},
                },
                "PredictResponse": {
                    "type": "object",
                    "required": ["task", "results"],
                    "properties": {"task": {"type": "string"}, "results": {"type": "array", "items": result}},
                },
                **result_schemas,
                **_openai_schemas(max_texts, max_chars),
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        }
                    },
                },
            }
        },
    }


def _openai_path(summary: str, op: str, request: str, max_body_bytes: int) -> dict:
    return {
        "post": {
            "summary": summary,
            "operationId": op,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}},
            },
            "responses": {
                "200": {
                    "description": '{"object": "list", "data": [...], "model", "usage"}, data in input order',
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ListResponse"}}},
                },
                **_post_errors(max_body_bytes,
                               "not UTF-8 JSON, or the served model has the other task (code wrong_task)"),
            },
        }
    }


def _openai_schemas(max_texts: int, max_chars: int) -> dict:
    text = {"type": "string", "minLength": 1, "maxLength": max_chars}
    inp = {"oneOf": [text, {"type": "array", "minItems": 1, "maxItems": max_texts, "items": text}]}
    common = {"input": inp, "model": {"type": "string"}, "user": {"type": "string"}}
    return {
        "EmbeddingsRequest": {
            "type": "object",
            "required": ["input"],
            "additionalProperties": False,
            "properties": {**common, "encoding_format": {"type": "string", "enum": ["float", "base64"],
                                                         "default": "float"}},
            "example": {"input": ["a gripping film", "dull"], "model": "minilm", "encoding_format": "float"},
        },
        "ClassifyRequest": {
            "type": "object",
            "required": ["input"],
            "additionalProperties": False,
            "properties": common,
            "example": {"input": ["a gripping film", "dull"]},
        },
        "ListResponse": {
            "type": "object",
            "required": ["object", "data", "model", "usage"],
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": {"type": "object", "required": ["object", "index"], "properties": {
                    "object": {"enum": ["embedding", "classification"]},
                    "index": {"type": "integer"},
                    "embedding": {"oneOf": [{"type": "array", "items": {"type": "number"}},
                                            {"type": "string", "description": "base64 of little-endian float32"}]},
                }}},
                "model": {"type": "string"},
                "usage": {"type": "object", "properties": {"prompt_tokens": {"type": "integer"},
                                                           "total_tokens": {"type": "integer"}}},
            },
        },
    }
