"""Operations: how flows that write DVC outputs agree with DVC when run outside `dvc repro`."""
