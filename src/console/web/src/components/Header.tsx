/** The bar on every signed-in page: where you are, who you are, and the way out. */
import { Link } from '../router.js';

export function Header({ username, onSignOut }: { username: string; onSignOut: () => void }) {
  return (
    <header className="topbar">
      <div className="topbar-inner">
        <Link to="/apps" className="brand">
          Valve
        </Link>
        <nav className="topnav">
          <Link to="/apps" data-testid="nav-apps">
            Apps
          </Link>
          <Link to="/runs" data-testid="nav-runs">
            Runs
          </Link>
          <Link to="/images" data-testid="nav-images">
            Images
          </Link>
        </nav>
        <div className="topbar-user">
          <span className="user-name" data-testid="header-user">
            {username}
          </span>
          <button type="button" className="button-quiet" data-testid="sign-out" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      </div>
    </header>
  );
}
