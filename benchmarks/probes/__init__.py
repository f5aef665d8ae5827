"""The bundled probe sets: building them, and what recording them costs."""
