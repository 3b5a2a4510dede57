def pytest_configure(config):
    config.addinivalue_line(
        "markers", "bench: runs a bench script end to end; checks it prints figures, never their values"
    )
