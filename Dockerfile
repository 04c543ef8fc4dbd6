# dpsd's image (SPEC 13; docs/operations.md "Containers"): the binary, CA certificates, the
# example configuration under /etc/dpsd, a non-root user, state in the volume /var/lib/dpsd,
# the API on 0.0.0.0:3000. `make image` builds it: it builds and strips the binary on the
# host first (target/image/dpsd; the release profile keeps debug info) and, where no image
# registry can be reached, makes the FROM image locally from Debian's packages under this
# very name. Only what the classic builder understands is used, so it builds with or
# without BuildKit.
FROM debian:bookworm-slim

# The user has a fixed numeric id, so that Kubernetes' runAsNonRoot can check it and a
# volume's owner is the same in every container. Written to /etc/passwd directly: the base
# made with mmdebstrap's essential variant has no useradd. CA certificates are in that base;
# Debian's own slim image needs them installed (from its mirror).
RUN set -eu; \
    if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends ca-certificates; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    echo 'dpsd:x:10001:10001:dpsd data-processing daemon:/var/lib/dpsd:/usr/sbin/nologin' >> /etc/passwd; \
    echo 'dpsd:x:10001:' >> /etc/group; \
    if [ -e /etc/shadow ]; then echo 'dpsd:!:::::::' >> /etc/shadow; fi; \
    install -d -o 10001 -g 10001 -m 750 /var/lib/dpsd /var/log/dpsd

# The shipped example, rewritten for a container as `make install` rewrites it for a host:
# jobs.d and workers.d beside the main file, state in the volume, the API on every address
# (dpsd warns at start-up that it has no auth: set api.auth, see docs/api.md 2).
COPY etc/dpsd.yaml etc/dpsd.production.yaml /etc/dpsd/
COPY jobs.d /etc/dpsd/jobs.d/
COPY workers.d /etc/dpsd/workers.d/
RUN sed -i 's|^state_dir: .*|state_dir: /var/lib/dpsd|; s|^jobs_dir: \.\./|jobs_dir: |; s|^workers_dir: \.\./|workers_dir: |; s|^  listen: 127\.0\.0\.1:3000|  listen: 0.0.0.0:3000|' \
      /etc/dpsd/dpsd.yaml

# Last, as it changes most often: the layers above stay cached. BINARY is the stripped
# binary in the build context (tests/container.rs builds its image from the binary under
# test, staged beside it).
ARG BINARY=target/image/dpsd
COPY ${BINARY} /usr/local/bin/dpsd

ENV DPSD_CONFIG=/etc/dpsd/dpsd.yaml
USER 10001:10001
WORKDIR /var/lib/dpsd
VOLUME /var/lib/dpsd
EXPOSE 3000
# Liveness only: a broker outage must not mark the container unhealthy (compose's
# depends_on and orchestrators restart on that). `dpsd health` exits 0 or 1, never 2.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["dpsd", "health"]
# dpsd as PID 1 reaps orphans and passes SIGTERM on to the daemon, which drains within
# supervisor.shutdown_timeout (30 s): give `docker stop` more (`-t 40`, compose's
# stop_grace_period).
STOPSIGNAL SIGTERM
CMD ["dpsd", "run"]
