import type { AnchorHTMLAttributes, MouseEvent, ReactElement } from 'react';
import { navigate } from './route.ts';

/** An ordinary link (it opens in a new tab, it is reached by Tab) that moves within the console without a reload. */
export function Link({
  href,
  onClick: given,
  ...rest
}: AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }): ReactElement {
  const onClick = (event: MouseEvent<HTMLAnchorElement>): void => {
    given?.(event);
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    navigate(href);
  };
  return <a href={href} {...rest} onClick={onClick} />;
}
