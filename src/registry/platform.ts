/** An OCI platform, in the Go names OCI uses (GOOS / GOARCH). */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const nodeArchToOci: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
};

/** This host's platform. Images are Linux images, whatever OS Node runs on. */
export function hostPlatform(): Platform {
  return { os: 'linux', architecture: nodeArchToOci[process.arch] ?? process.arch };
}
