"""One construct per capability; each takes typed props (a frozen dataclass) and exposes what others wire to."""
